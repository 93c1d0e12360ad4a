"""The learner: a policy that samples token in / token out, rollouts, advantages, losses, GRPO and PPO, and the run around them (see docs/design.md)."""
