"""Datasets in: fetching (`acquire`, `download`), reading each source format into the workflow's tables (`beir`,
`lotte`, `tevatron`, `msmarco/`), the dev split carved from train (`dev_split`), and the table formats they share."""
