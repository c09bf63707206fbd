"""Datasets in: fetching (`acquire`, `download`), reading each source format into the workflow's tables (`beir`,
`lotte`, `tevatron`, `msmarco/`), the dev split carved from train (`dev_split`), and `formats`, the tables and
files they all write and the steps read. A new dataset format is one more reader here that writes them with
`formats`."""
