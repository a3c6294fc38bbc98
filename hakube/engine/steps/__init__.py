"""The deploy pipeline's steps, one module per concern, in pipeline order (deploy.PIPELINE).

Each step reads facts, plans actions (plan.Action) and executes them (plan.execute), then
passes its health gate; none branches on dry run to change anything.
"""
