"""The generation job: diffusers checkpoints x a prompt set -> the images of a workspace."""
