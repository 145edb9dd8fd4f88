"""The demo: its recipe on the storyboard benchmark, and the pictures the demo and the Space draw."""
