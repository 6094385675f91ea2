"""The device side of the deploy bundle: a sail runner and the `bmodel.py` app. Runs on the Sophon box with
Python 3.7+, numpy, OpenCV and the SDK's `sophon.sail`; imports only bmpose.pose (shipped with it)."""
