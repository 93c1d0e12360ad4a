"""Adapters for other trainers: `trl` (TRL's GRPOTrainer), `verl` (a verl interaction), `verifiers`
(a verifiers v1 plugin). Each needs its extra (`pip install 'sage-gym[trl]'`, ...); see docs/integrations.md."""
