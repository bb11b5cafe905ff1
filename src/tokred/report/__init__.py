"""Everything the paper shows, generated from the per-run metrics files: `load` (metrics -> frames,
paired comparisons), `tables`, `figures`, `macros` (numbers the text reads), `merges` (the token-merge
visualisation). The rule scripts in workflow/scripts call these.
"""
