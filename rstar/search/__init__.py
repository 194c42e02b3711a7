"""Tree search over code steps: MCTS, step beam search, best-of-N, greedy."""
