"""Pure statistics over arrays and frames (ratings, pair choice, agreement, rater quality).

Nothing here imports the rest of the project, a database or torch (tests/test_import_rules.py).
"""
