"""Evaluation on RefCOCO/+/g and PhraseCut the way the paper measures it (``iterprime eval``).

datasets.py reads the benchmark files (masks.py decodes their polygons and RLE), metrics.py
scores, runner.py runs the resumable loop, ablations.py names the paper's table rows,
image_masking.py is Table 4's "mask image" variant, report.py writes the JSON and Markdown
with the paper's figures, cli.py is the subcommand. Nothing here is imported by the node.
"""
