"""A task's attachments at submit: what is accepted, what is read out of it, where it is kept.

- `kinds`: the accepted types, told by the content's first bytes, not only by the declared
  type (stdlib only: the CLI guesses a file's type with it too);
- `images`, `pdf`, `tables`: what each kind yields for the models (an image's size; a PDF's
  text per page, its pages without text rendered as PNG; a CSV's or XLSX's cells as bounded
  text tables with sheet and cell references);
- `prepare`: the limits (`[attachments]` in the configuration) and the checks of a submit's
  attachments, each refusal naming the attachment and saying what is accepted;
- `files`: the task's folder under the data directory, content-addressed and private, and
  its removal with the task's data.

Nothing here is imported by `__init__`: the CLI imports `kinds` without pypdf or openpyxl.
"""
