//! AI bookshelf scan: image type detection, Gemini request building and response parsing.
