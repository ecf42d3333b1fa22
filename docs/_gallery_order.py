"""Order of the gallery examples: from first use to the finer points."""

import os

ORDER = [
    "plot_detection_three_lines.py",
    "plot_pipeline_cross_val.py",
    "plot_grid_search.py",
    "plot_threshold.py",
    "plot_few_shot.py",
    "plot_explain_heatmaps.py",
    "plot_deployment.py",
]


class ExampleOrder:
    """Sort key for sphinx-gallery's ``within_subsection_order``.

    Listed examples come first, in ``ORDER``; any other one after them, by
    file name.
    """

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        name = os.path.basename(filename)
        return (ORDER.index(name), "") if name in ORDER else (len(ORDER), name)

    def __repr__(self):
        return f"<{type(self).__name__}>"
