"""The words the database stores in its ``kind`` columns: one definition each.

Store verbs validate them; reports and the command line offer them as filters. Vote
outcomes live in :mod:`arena.stats.pairs` (``OUTCOMES``), beside their integer codes,
because the statistics must not import the rest of the project.
"""

MODEL_KINDS = ("demo", "import", "diffusers", "reference")
RATER_KINDS = ("human", "simulated")
