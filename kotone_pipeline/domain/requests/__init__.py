"""Request knowledge: the catalog, the lexicon and its reader, the label rule, prompts, the composer, the teacher."""
