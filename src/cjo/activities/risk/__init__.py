"""Risk: RiskPolicies evaluated for pages of users, and risk lists."""
