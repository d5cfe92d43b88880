"""The text: vocabulary, plays as clients, prompts, the style judge, the copy probe. NumPy only."""
