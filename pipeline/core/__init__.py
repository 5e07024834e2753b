"""Framework shared by every stage: configuration, corpus layout, keys, keep-or-drop rules, the stage runner."""
