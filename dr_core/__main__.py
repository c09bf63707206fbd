import gc
import sys

from dr_core.cli import main

code = main()
# The step is done: what the process holds leaves the garbage collector's scans, which at the interpreter's exit
# went over every object of torch and transformers once more (~0.8 s a step; benchmarks/README.md, start-up).
gc.freeze()
sys.exit(code)
