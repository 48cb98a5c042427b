"""Drafters behind one small protocol (base.Drafter): n-gram lookup, a draft model, MTP heads."""
