CREATE DATABASE optuna OWNER edgeopt;
