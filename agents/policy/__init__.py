"""A policy model, below both the learner and the evaluator: loading (folders, hub ids, GGUF files,
named offline models, LoRA), the chat template as token pieces, the Hugging Face sampling engine,
the model with its log-prob pass, and the run-folder layout trained policies are saved in.

`agents.learn` trains these policies and `agents.eval` plays them; neither imports the other."""
