//! A small multipart/form-data parser over an in-memory body.
