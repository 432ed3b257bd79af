"""Example apps driven by live queries: a Textual chat, a Tk todo list, a dashboard."""
