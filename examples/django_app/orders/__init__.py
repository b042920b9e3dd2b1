"""The recipe's Django app: orders, placed in a transaction and shipped by a task."""
