"""The words the database stores in its ``kind`` columns: one definition each.

Store verbs validate them; reports and the command line offer them as filters. Vote
outcomes live in :mod:`arena.stats.pairs` (``OUTCOMES``), beside their integer codes,
because the statistics must not import the rest of the project.
"""

MODEL_KINDS = ("demo", "import", "diffusers", "reference")
#: ``judge``: a machine rater (a vision-language model) voting through the battle path.
#: Its votes never enter a leaderboard, agreement view or export unless asked for by
#: kind (``Filters(rater_kind="judge")``, ``--rater-kind judge``).
RATER_KINDS = ("human", "simulated", "judge")
#: The kinds counted when no kind is asked for: every kind but the judges.
DEFAULT_RATER_KINDS = ("human", "simulated")
#: A rater group's name (``expert``, ``crowd``, ...): set by the login file, the Admin
#: app or per judge, never by a browser. Letters, digits, '-', '_' and '.', 1 to 40.
RATER_GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$"
