"""Training programs and the SageMaker Pipeline definition (see README.md). Each program also runs as a
plain script: ``python training/train.py ...`` (sibling modules are imported flat, as in the job)."""
