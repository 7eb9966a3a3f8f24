"""Release: the registry gate (``registry``), the MLflow pyfunc model (``pyfunc`` + the models-from-code file
``pyfunc_model``) and prediction from a checkpoint or a registered model (``predict``)."""
