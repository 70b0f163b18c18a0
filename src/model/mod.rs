//! The model: what a listener, a raw socket and a listener event are called.
