"""Offline evaluation: logged datasets, replay, off-policy estimators (IPS/SNIPS/DR), a simulator, the CLI."""
