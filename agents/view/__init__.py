"""See the dialogues of a training run or an evaluation: one self-contained HTML file.

    python -m agents.view runs/grpo                     # a run (or a parent of runs: follows `latest`)
    python -m agents.view evaluations/empathic-eval     # an evaluation
    python -m agents.view evaluations/base evaluations/trained --open   # two folders side by side

`agents.view.data` builds what the page shows (unit-tested), `agents.view.page` inlines it into
`template.html` (compressed, escaped), `agents.view.cli` is the command line.
"""

from agents.view.cli import default_output, write_view
from agents.view.data import Folder, ViewerError, load_folder, page_data
from agents.view.page import render_page

__all__ = ["Folder", "ViewerError", "default_output", "load_folder", "page_data", "render_page", "write_view"]
