"""The world and the simulated users: tasks, rewards, the search tool. Pure Python + datasets."""
