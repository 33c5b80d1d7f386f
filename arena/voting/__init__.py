"""The live arena: pairing, battles, votes, who may vote, gold checks, rater exclusion."""
