"""Labelling real frames: tip proposals (the model and a classical profile finder), review sheets, COCO keypoints."""
