"""The model as it travels: the bundle and its encoder, the exact SHAP explainer, the routing
policy, the scorer that applies them, and the registry's read side."""
