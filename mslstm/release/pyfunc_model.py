"""The models-from-code file of the registered pyfunc model (``mlflow.pyfunc.log_model(python_model=<this file>)``).

MLflow copies this file into the logged model and runs it when the model is loaded: it builds the wrapper
through ``mlflow.models.set_model``, so loading never unpickles code. The checkpoint travels as the model's
``checkpoint`` artifact and is read with ``torch.load(weights_only=True)`` in ``load_context``.
"""
import mlflow.models

from mslstm.release.pyfunc import FramePredictorModel

mlflow.models.set_model(FramePredictorModel())
