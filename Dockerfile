# The hub image: `docker compose up` runs it next to PostgreSQL 16 and Mosquitto 2.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY actors ./actors
COPY devices ./devices
COPY edge_agent ./edge_agent
COPY web ./web
COPY schemas ./schemas
RUN pip install --no-cache-dir .
EXPOSE 8080
CMD ["campushub", "serve", "--host", "0.0.0.0", "--port", "8080"]
