"""rStar-Math: code-augmented MCTS, a process preference model and
self-evolution, for one workstation GPU or a CPU."""

__version__ = "0.1.0"
