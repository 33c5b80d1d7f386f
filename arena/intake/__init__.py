"""What comes in: prompt files, image folders, reference sets, and checks of model checkpoints."""
