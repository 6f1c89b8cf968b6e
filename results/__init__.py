"""Results-Based Accountability: results, their indicators, the story behind the curve, what
works, partners' roles and the action plan."""
