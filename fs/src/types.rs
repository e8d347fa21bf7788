//! Leaf types shared by every layer of the crate (filled in step 2).
