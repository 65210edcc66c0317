//! ClassBench rule sets, traces and expected results, run through the classifier.
