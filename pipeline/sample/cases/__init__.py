"""The planted cases: each ``plant_*`` function adds pages whose candidates trip exactly one rule (or sit exactly at a
threshold and are kept), and records each fate in the oracle. Grouped by the stage whose rules they exercise."""
