"""Text tools for filter-text: the unigram/n-gram tokeniser and fastText language identification."""
