"""The page's service without Streamlit: the engine, the training queue, stored runs, links
and figures."""
