"""The device bundle (`bmpose deploy`): a chip's bmodels, deploy.json, the pose core and the sail app, as a
folder and a .tar.gz that runs on the box with Python 3.7+, numpy, OpenCV and sophon.sail."""
