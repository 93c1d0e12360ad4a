"""What the learner and the evaluator both read replies with, below both: the response-strategy
tagger, the reply canaries, the rule-based reference agents, and the chat endpoint an agent is
served from (with its errors). Nothing here imports torch."""
