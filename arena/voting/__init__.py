"""The live arena: which pair next, serving a battle, recording a vote, who may vote, gold checks, exclusion."""
