import gc
import sys

# A step starts by importing torch and transformers: ~1M objects that live as long as it does. The full collections
# set off while they load (7, 0.66 s of a training step's start) find nothing to free: one full collection per 100
# of generation 1 instead of 10 skips them; young objects are collected as before.
gc.set_threshold(*gc.get_threshold()[:2], 100)

from dr_core.cli import main  # noqa: E402

code = main()
# The step is done: what the process holds leaves the garbage collector's scans, which at the interpreter's exit
# went over every object of torch and transformers once more (~0.8 s a step; benchmarks/README.md, start-up).
gc.freeze()
sys.exit(code)
