"""The page's parts in Streamlit, one module per section; app.py lays them out top to bottom.
What they show comes from `fedtext`, which never imports Streamlit."""
