"""The human side of the text-to-image arena: workspace, votes, ratings, agreement, web app.

Nothing in this package imports torch; the machine side lives in ``scoring``.
"""

__version__ = "0.1.0"
