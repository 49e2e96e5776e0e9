"""Agent accounts: one account per host agent, and the hosts it may carry (its grant)."""
