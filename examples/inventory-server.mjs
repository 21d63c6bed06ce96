#!/usr/bin/env node
/**
 * A small MCP server for the codemode examples: an in-memory shop with products, stock and orders.
 * Plain JavaScript so it runs from a fresh clone with no build step: `node examples/inventory-server.mjs`.
 *
 * Tools: list_products, get_product, search_orders, create_order, restock. Every tool has an input
 * schema, and the read tools declare an output schema and return structuredContent.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const products = new Map(
  [
    { sku: 'KB-101', name: 'Mechanical keyboard', category: 'peripherals', priceCents: 8900, stock: 14 },
    { sku: 'MS-220', name: 'Wireless mouse', category: 'peripherals', priceCents: 2900, stock: 3 },
    { sku: 'MN-270', name: '27" 4K monitor', category: 'displays', priceCents: 32900, stock: 2 },
    { sku: 'MN-240', name: '24" monitor', category: 'displays', priceCents: 15900, stock: 9 },
    { sku: 'CB-USB', name: 'USB-C cable (2 m)', category: 'cables', priceCents: 1200, stock: 48 },
    { sku: 'CB-HDM', name: 'HDMI 2.1 cable', category: 'cables', priceCents: 1900, stock: 4 },
    { sku: 'DK-400', name: 'Thunderbolt dock', category: 'docks', priceCents: 24900, stock: 0 },
  ].map((p) => [p.sku, p]),
);

let nextOrder = 1007;
const orders = [
  { id: 'ord-1001', customer: 'ada@example.com', status: 'shipped', items: [{ sku: 'KB-101', quantity: 1 }, { sku: 'CB-USB', quantity: 2 }] },
  { id: 'ord-1002', customer: 'grace@example.com', status: 'shipped', items: [{ sku: 'MN-270', quantity: 2 }] },
  { id: 'ord-1003', customer: 'linus@example.com', status: 'pending', items: [{ sku: 'MS-220', quantity: 1 }] },
  { id: 'ord-1004', customer: 'ada@example.com', status: 'shipped', items: [{ sku: 'MN-240', quantity: 1 }, { sku: 'CB-HDM', quantity: 1 }] },
  { id: 'ord-1005', customer: 'barbara@example.com', status: 'cancelled', items: [{ sku: 'DK-400', quantity: 1 }] },
  { id: 'ord-1006', customer: 'grace@example.com', status: 'shipped', items: [{ sku: 'DK-400', quantity: 1 }, { sku: 'CB-USB', quantity: 1 }] },
].map(withTotal);

function withTotal(order) {
  const totalCents = order.items.reduce((sum, item) => sum + (products.get(item.sku)?.priceCents ?? 0) * item.quantity, 0);
  return { ...order, totalCents };
}

const Product = z.object({
  sku: z.string().describe('Stock-keeping unit, e.g. "KB-101"'),
  name: z.string(),
  category: z.enum(['peripherals', 'displays', 'cables', 'docks']),
  priceCents: z.number().int().describe('Unit price in cents'),
  stock: z.number().int().describe('Units on hand'),
});
const OrderItem = z.object({ sku: z.string(), quantity: z.number().int().min(1) });
const Order = z.object({
  id: z.string(),
  customer: z.string().describe('Customer e-mail'),
  status: z.enum(['pending', 'shipped', 'cancelled']),
  items: z.array(OrderItem),
  totalCents: z.number().int(),
});

const server = new McpServer({ name: 'example-inventory', version: '1.0.0' });

function ok(structured) {
  return { content: [{ type: 'text', text: JSON.stringify(structured) }], structuredContent: structured };
}

function fail(message, details) {
  return { isError: true, content: [{ type: 'text', text: message }], structuredContent: details };
}

server.registerTool(
  'list_products',
  {
    title: 'List products',
    description: 'List the products in the catalog with their price and stock, optionally filtered by category or to those in stock.',
    inputSchema: {
      category: Product.shape.category.optional().describe('Only this category'),
      inStockOnly: z.boolean().optional().describe('Only products with stock > 0'),
    },
    outputSchema: { products: z.array(Product) },
    annotations: { readOnlyHint: true },
  },
  async ({ category, inStockOnly }) => {
    const list = [...products.values()].filter((p) => (category === undefined || p.category === category) && (!inStockOnly || p.stock > 0));
    return ok({ products: list });
  },
);

server.registerTool(
  'get_product',
  {
    title: 'Get a product',
    description: 'Get one product by SKU. Fails with a not_found error for an unknown SKU.',
    inputSchema: { sku: z.string().describe('The SKU, e.g. "KB-101"') },
    outputSchema: Product.shape,
    annotations: { readOnlyHint: true },
  },
  async ({ sku }) => {
    const product = products.get(sku);
    if (product === undefined) return fail(`No product with SKU ${sku}.`, { error: 'not_found', sku });
    return ok(product);
  },
);

server.registerTool(
  'search_orders',
  {
    title: 'Search orders',
    description: 'Find orders by customer e-mail and/or status. Returns the orders with their line items and totals in cents.',
    inputSchema: {
      customer: z.string().optional().describe('Customer e-mail'),
      status: Order.shape.status.optional(),
    },
    outputSchema: { orders: z.array(Order) },
    annotations: { readOnlyHint: true },
  },
  async ({ customer, status }) => {
    const found = orders.filter((o) => (customer === undefined || o.customer === customer) && (status === undefined || o.status === status));
    return ok({ orders: found });
  },
);

server.registerTool(
  'create_order',
  {
    title: 'Create an order',
    description: 'Place an order and take the items out of stock. Fails with an insufficient_stock error (and changes nothing) when any item is short.',
    inputSchema: { customer: z.string().describe('Customer e-mail'), items: z.array(OrderItem).min(1) },
    outputSchema: Order.shape,
  },
  async ({ customer, items }) => {
    const short = items.filter((i) => (products.get(i.sku)?.stock ?? 0) < i.quantity).map((i) => ({ sku: i.sku, requested: i.quantity, available: products.get(i.sku)?.stock ?? 0 }));
    if (short.length > 0) return fail(`Not enough stock for ${short.map((s) => s.sku).join(', ')}.`, { error: 'insufficient_stock', short });
    for (const i of items) products.get(i.sku).stock -= i.quantity;
    const order = withTotal({ id: `ord-${nextOrder++}`, customer, status: 'pending', items });
    orders.push(order);
    return ok(order);
  },
);

server.registerTool(
  'restock',
  {
    title: 'Restock a product',
    description: 'Add units to a product\'s stock. Returns the updated product.',
    inputSchema: { sku: z.string(), quantity: z.number().int().min(1).max(1000) },
    outputSchema: Product.shape,
  },
  async ({ sku, quantity }) => {
    const product = products.get(sku);
    if (product === undefined) return fail(`No product with SKU ${sku}.`, { error: 'not_found', sku });
    product.stock += quantity;
    return ok(product);
  },
);

const transport = new StdioServerTransport();
await server.connect(transport);
// The SDK's stdio transport does not notice EOF: exit when the client closes our stdin.
process.stdin.once('end', () => process.exit(0));
process.stdin.once('close', () => process.exit(0));
