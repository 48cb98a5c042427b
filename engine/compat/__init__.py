"""Which drafter fits which target, from metadata alone: MTP pair rules, draft-model vocabulary rules and
the drafter options offered for a target."""
