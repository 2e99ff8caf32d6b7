"""A blur sweep outside the model: its K levels, and its decoded images (colour match, blur meter, contact sheet). Pure torch/kornia; no ComfyUI import."""
