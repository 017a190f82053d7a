"""Publishing a build folder to the Hugging Face Hub."""
